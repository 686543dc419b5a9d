"""The realtime bus: channel names, the event envelope, publish, history and SSE delivery."""
