from dicomweb.conftest import *  # noqa: F401,F403  (users with tokens, groups)
