"""Builders that return a Team graph."""

from agentfab.topologies.chain import chain
from agentfab.topologies.custom import custom
from agentfab.topologies.groups import groups
from agentfab.topologies.mixture import mixture_of_agents
from agentfab.topologies.star import star
from agentfab.topologies.tree import tree

__all__ = ["chain", "custom", "groups", "mixture_of_agents", "star", "tree"]
