"""Temporary alias while parallel work lands; import ``server_process`` instead."""
from server_process import *  # noqa: F401,F403
from server_process import RunningServer, free_ports, http_status, start_server  # noqa: F401
