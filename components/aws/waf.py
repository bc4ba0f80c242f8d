"""The web ACL in front of the public load balancer.

AWS's managed rule groups block the common web exploits (the OWASP top ten's
injection and traversal patterns) and known-bad inputs (Log4Shell among them)
before a request reaches a task; IP reputation drops traffic from known
botnets. Two rate-based rules bound what one client address can send: every
path, and a tighter bound on `/auth/`, where each request costs a bcrypt hash.
The API's own per-address and per-account login limits still apply behind it.
Requests are logged to CloudWatch with credentials redacted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.model.naming import Names

MANAGED_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
)
# Five minutes, the window AWS evaluates rate-based rules over by default.
WINDOW_SECONDS = 300
AUTH_PATH = "/auth/"
REDACTED_HEADERS = ("authorization", "cookie")


@dataclass(frozen=True)
class WafArgs:
    names: Names
    load_balancer_arn: pulumi.Input[str]
    rate_limit: int
    """Requests per client address per five minutes, any path."""
    auth_rate_limit: int
    """Requests per client address per five minutes to /auth/."""
    log_retention_days: int
    kms_key_arn: pulumi.Input[str]


def _visibility(metric: str) -> aws.wafv2.WebAclRuleVisibilityConfigArgs:
    return aws.wafv2.WebAclRuleVisibilityConfigArgs(
        cloudwatch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


def _managed(name: str, priority: int) -> aws.wafv2.WebAclRuleArgs:
    return aws.wafv2.WebAclRuleArgs(
        name=name,
        priority=priority,
        # Blocking as the group's own rules say (`count` would only observe).
        override_action=aws.wafv2.WebAclRuleOverrideActionArgs(
            none=aws.wafv2.WebAclRuleOverrideActionNoneArgs()  # type: ignore[no-untyped-call]
        ),
        statement=aws.wafv2.WebAclRuleStatementArgs(
            managed_rule_group_statement=aws.wafv2.WebAclRuleStatementManagedRuleGroupStatementArgs(
                name=name, vendor_name="AWS"
            )
        ),
        visibility_config=_visibility(name),
    )


def _rate(name: str, priority: int, limit: int, path_prefix: str | None) -> aws.wafv2.WebAclRuleArgs:
    w = aws.wafv2
    scope = None
    if path_prefix is not None:
        scope = w.WebAclRuleStatementRateBasedStatementScopeDownStatementArgs(
            byte_match_statement=w.WebAclRuleStatementRateBasedStatementScopeDownStatementByteMatchStatementArgs(
                positional_constraint="STARTS_WITH",
                search_string=path_prefix,
                field_to_match=w.WebAclRuleStatementRateBasedStatementScopeDownStatementByteMatchStatementFieldToMatchArgs(
                    uri_path=w.WebAclRuleStatementRateBasedStatementScopeDownStatementByteMatchStatementFieldToMatchUriPathArgs()  # type: ignore[no-untyped-call]
                ),
                text_transformations=[
                    w.WebAclRuleStatementRateBasedStatementScopeDownStatementByteMatchStatementTextTransformationArgs(
                        priority=0, type="LOWERCASE"
                    )
                ],
            )
        )
    return w.WebAclRuleArgs(
        name=name,
        priority=priority,
        action=w.WebAclRuleActionArgs(block=w.WebAclRuleActionBlockArgs()),
        statement=w.WebAclRuleStatementArgs(
            rate_based_statement=w.WebAclRuleStatementRateBasedStatementArgs(
                limit=limit,
                aggregate_key_type="IP",
                evaluation_window_sec=WINDOW_SECONDS,
                scope_down_statement=scope,
            )
        ),
        visibility_config=_visibility(name),
    )


class Waf(pulumi.ComponentResource):
    acl: aws.wafv2.WebAcl

    def __init__(self, name: str, args: WafArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("wondernest:aws:Waf", name, None, opts)
        names = args.names
        child = pulumi.ResourceOptions(parent=self)
        # Rate rules first: a flood is dropped before the managed groups inspect it.
        rules = [
            _rate("auth-rate", 0, args.auth_rate_limit, AUTH_PATH),
            _rate("rate", 1, args.rate_limit, None),
            *(_managed(group, 10 + i) for i, group in enumerate(MANAGED_GROUPS)),
        ]
        self.acl = aws.wafv2.WebAcl(
            "web-acl",
            name=names.resource("api"),
            description=f"{names.resource('api')}: managed rule groups and per-address rate limits",
            scope="REGIONAL",
            default_action=aws.wafv2.WebAclDefaultActionArgs(allow=aws.wafv2.WebAclDefaultActionAllowArgs()),
            rules=rules,
            visibility_config=aws.wafv2.WebAclVisibilityConfigArgs(
                cloudwatch_metrics_enabled=True, metric_name=names.resource("api"), sampled_requests_enabled=True
            ),
            opts=child,
        )
        aws.wafv2.WebAclAssociation(
            "web-acl-association", resource_arn=args.load_balancer_arn, web_acl_arn=self.acl.arn, opts=child
        )
        logs = aws.cloudwatch.LogGroup(
            "web-acl-logs",
            name=waf_log_group_name(names),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.kms_key_arn,
            opts=child,
        )
        aws.wafv2.WebAclLoggingConfiguration(
            "web-acl-logging",
            resource_arn=self.acl.arn,
            log_destination_configs=[logs.arn],
            redacted_fields=[
                aws.wafv2.WebAclLoggingConfigurationRedactedFieldArgs(
                    single_header=aws.wafv2.WebAclLoggingConfigurationRedactedFieldSingleHeaderArgs(name=header)
                )
                for header in REDACTED_HEADERS
            ],
            opts=child,
        )
        self.register_outputs({"webAclArn": self.acl.arn})


def waf_log_group_name(names: Names) -> str:
    # WAF delivers only to log groups whose name starts with aws-waf-logs-.
    return f"aws-waf-logs-{names.resource('api')}"
