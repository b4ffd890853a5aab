"""``dockyard serve``: the Docker Engine REST API (docker's API 1.24-1.44) on unix sockets, TCP
with TLS and systemd's sockets.

- :mod:`.http`: the HTTP/1.1 server (a thread per connection, keep-alive, chunked streams,
  the hijacked connection of attach and exec start), routing and version negotiation.
- :mod:`.errors`: the one table from the engine's error categories to HTTP statuses.
- :mod:`.handlers`: the endpoints: parse, call the engine, render docker's JSON.
- :mod:`.streams`: docker's stream framing and the attach/exec sessions.
- :mod:`.terminal`: detach keys and terminal sizes of attach and exec sessions.
- :mod:`.listeners`: where the daemon listens (``-H`` unix://, tcp:// with TLS, fd://).
- :mod:`.archive`, :mod:`.stats`, :mod:`.resources`, :mod:`.websocket`: a container's
  filesystem (cp, export, changes), statistics, update and attach over a WebSocket.
- :mod:`.images_extra`, :mod:`.registryauth`: history, save/load, push, commit, search;
  ``POST /auth`` and ``X-Registry-Auth``. :mod:`.bodies`: streamed responses, spooled bodies.

The daemon has threads, so it never forks: containers start under the engine's monitor, which
the daemon starts as a program of its own (engine/supervision.py ``spawn_by_exec``).
"""
