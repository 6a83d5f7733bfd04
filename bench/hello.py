"""The reference of every benchmark: a bare Flask JSON hello, served by the same gunicorn.conf.py.

gunicorn --config gunicorn.conf.py --bind 127.0.0.1:PORT bench.hello:app
"""

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/")
def hello() -> Response:
    return jsonify(hello="world")
