"""The dev stack's AWS emulation: moto's server for S3, SQS, SNS and SES, with
the resources an app declares created in it before it reports ready."""
