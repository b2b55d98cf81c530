from voice.bus.base import Bus, Message, Subscription
from voice.bus.local import LocalBus

__all__ = ["Bus", "LocalBus", "Message", "Subscription"]
