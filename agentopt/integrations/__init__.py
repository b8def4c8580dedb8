"""Bridges to other frameworks' programs, so agentopt's optimisers work on them.

Each lives in a module of its own and is imported explicitly (``from agentopt.integrations.dspy
import optimize_program``): ``import agentopt`` imports none of them, and none imports its
framework until it is used.
"""
