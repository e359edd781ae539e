"""The actor runtime: actors with bounded mailboxes, and the system that supervises them."""

from aurea.runtime.actor import Abandonable, Actor, ActorRef, Ask, Later
from aurea.runtime.system import ActorStats, ActorSystem, RestartPolicy

__all__ = [
    "Abandonable",
    "Actor",
    "ActorRef",
    "ActorStats",
    "ActorSystem",
    "Ask",
    "Later",
    "RestartPolicy",
]
