"""The local stack: LocalStack in host mode (no Docker) + a SAM template deployed into it.

Modules, by what they hold:

- ``settings``: paths under the state folder, the port, endpoint and region.
- ``report``: :class:`StackError` and the progress lines on stderr.
- ``host``: Python 3.13 on this machine, subprocesses, file locks (shared with sam_build).
- ``template``: CloudFormation YAML/JSON reading and its parameter names.
- ``aws``: boto3 clients pointed at LocalStack.
- ``venvs``: LocalStack's own venv and the interpreter that runs the Lambda handlers.
- ``process``: starting, stopping and probing the LocalStack process.
- ``package``: zipping code and layers (from ``sam build``'s output) and uploading them.
- ``deploy``: creating, updating and deleting a stack; its outputs.
- ``envfile``: ``.datalake/local.env``.
- ``lifecycle``: ``up``, ``down`` and ``status`` of the whole local stack.
- ``cli``: the ``stack.py`` commands.

``infra/local/stack.py`` is the command and re-exports what callers use.
"""
