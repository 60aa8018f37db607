"""AWS: the Batch environment (setup, status, teardown), its IAM policies,
network and CloudFormation template.

The engine is :mod:`bidsbatch.aws.environment`; policies are pure functions
in :mod:`bidsbatch.aws.policies`. Import from those modules: this package
imports nothing itself, so that ``import bidsbatch.aws`` stays cheap.
"""
