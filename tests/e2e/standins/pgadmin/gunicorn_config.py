# As upstream: the server header names no version.
import gunicorn

gunicorn.SERVER_SOFTWARE = "Python"
