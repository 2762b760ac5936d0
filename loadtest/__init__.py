"""Load testing: the light WebRTC participant and the locust swarm (see docs)."""
