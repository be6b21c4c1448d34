from mvfixtures import *  # noqa: F401,F403
