"""E-mail to buyers: an outbox written with each change worth telling (`outbox`), sent later by
the worker (`sender`), and a development page listing what was kept (`views`)."""
