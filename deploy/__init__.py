"""Deployment tooling: building Elastic Beanstalk source bundles."""
