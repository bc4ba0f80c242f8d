"""The platform on AWS: VPC, RDS, ElastiCache, ECS Fargate, Secrets Manager, AMP, AWS Backup."""
