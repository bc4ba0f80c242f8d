"""The platform's rules as pure functions over resource properties.

`registry.RULES` lists them; `registry.policies()` turns them into the
pulumi_policy objects the pack (../__main__.py) serves. Tests call the rules
directly, and over whole mocked stacks.
"""
