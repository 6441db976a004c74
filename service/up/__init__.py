"""``imgcls up``: the whole product on one machine, as one supervised unit (the command: service/cli/up.py).

- ``preflight.py``: what is checked before anything starts: the folders are not another ``up``'s, the port is
  free, the programs are installed.
- ``embedded_redis.py``: the ``redis-server`` child: its data under ``<var>/redis``, append-only, on 127.0.0.1
  with a password made for this run.
- ``supervisor.py``: starts the parts (child processes), waits until each is ready, restarts one that dies
  (with back-off) and stops them in order.

Only processes are supervised: the API (``imgcls serve``) and the workers (``imgcls worker``) run as child
processes of the same Python, so nothing here imports training code.
"""
