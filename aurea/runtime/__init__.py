"""The actor runtime: actors with bounded mailboxes, and the system that supervises them."""

from aurea.runtime.actor import Actor, ActorRef
from aurea.runtime.system import ActorStats, ActorSystem, RestartPolicy

__all__ = ["Actor", "ActorRef", "ActorStats", "ActorSystem", "RestartPolicy"]
