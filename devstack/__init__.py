"""Local stack for `make run` and the end-to-end tests: moto_server, Cognito, gunicorn."""
