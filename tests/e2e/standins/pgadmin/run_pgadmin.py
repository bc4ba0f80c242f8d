# gunicorn's application: pgAdmin in server mode, as the upstream image runs it.
import builtins

builtins.SERVER_MODE = True

from pgAdmin4 import app  # noqa: E402,F401
