"""WSGI entry point: Elastic Beanstalk and gunicorn serve `application`."""

from api import create_app

application = create_app()
