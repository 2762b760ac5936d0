"""visio's control plane: aiohttp signaling server, REST API, and the web client host."""
