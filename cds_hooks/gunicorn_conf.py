"""The stable gunicorn config path, `-c python:cds_hooks.gunicorn_conf`: the settings live in `ops/gunicorn_conf.py`.

gunicorn reads every module-level name that is one of its settings or server hooks, so they are
re-exported here by name.
"""

from cds_hooks.ops.gunicorn_conf import *  # noqa: F403
