"""The operator's commands (`make verify`, `make connect`, `make reset-db` …).
They read a stack's config file or outputs and talk to what the program made;
the Pulumi program never imports them."""
