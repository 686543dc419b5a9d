"""The channel layers of the bus, as CHANNEL_LAYERS names them: `RedisSSEChannelLayer`
(realtime/redis_layer.py) where Redis is configured, `MemorySSEChannelLayer`
(realtime/memory_layer.py) otherwise. What they share: realtime/layer_base.py."""

from realtime.memory_layer import MemorySSEChannelLayer
from realtime.redis_layer import RedisSSEChannelLayer, RedisSSELoopLayer
from realtime.redis_store import history_key

__all__ = ["MemorySSEChannelLayer", "RedisSSEChannelLayer", "RedisSSELoopLayer", "history_key"]
