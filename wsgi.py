"""The WSGI entry point: `gunicorn wsgi:app`."""

from app import create_app, heap

app = create_app()
heap.freeze()
