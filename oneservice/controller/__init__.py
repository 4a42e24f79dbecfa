"""The embedded network controller: networks and members, authorization, signed configs."""
