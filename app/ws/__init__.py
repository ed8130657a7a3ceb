"""WebSocket endpoints (flask-sock) and the hub that fans live notifications out to open sockets."""
