"""The ``corenet`` command (``corenet ...`` or ``python -m corenet ...``).

``main.py`` holds the parser and the model/data commands (``demo``, ``train``, ``summary``,
``evaluate``, ``export``); ``images.py`` the commands on your own image files (``train --data
folder``, ``predict``, ``visualize``) and the shared user-error handling. The command sits on
corenet's top floor: it uses the public API only.
"""

from .main import main

__all__ = ["main"]
