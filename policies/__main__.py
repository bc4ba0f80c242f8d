"""The policy pack `pulumi preview --policy-pack policies` loads.

Constructing the PolicyPack starts the analyzer server and never returns, so
everything testable lives in wondernest_policies/; this file only assembles it.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from wondernest_policies.registry import policies

PolicyPack(
    name="wondernest",
    # Mandatory unless a stack's policy config says otherwise (config/<stack>.json).
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies(),
)
