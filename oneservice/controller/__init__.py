"""The embedded network controller: networks and members, authorization, signed configs.
Nothing here is imported until this node is a controller (or is made one): a member's node
does not load it, SQLite or psycopg."""

CONTROLLER_DB_FILE = "controller.db"  # in the home: this node's controller keeps SQLite here
