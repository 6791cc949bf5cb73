"""HTTP handlers only: the Alertmanager receiver, the API, the operational endpoints, request
authentication, and the one way an error is answered (``errors``). No SQL and no rule logic
here: handlers call the store's functions, the service and the core."""
