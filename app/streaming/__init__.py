"""Live streams (`WS /v1/stream`): the wire rules (`protocol`), one stream's state
(`session`), the open-stream count (`slots`) and the connection that ties them to a socket
(`connection`: the reader, the bounded queue of windows, the decider). Import the modules
themselves: the app's services hold the slots, and the connection uses the services."""
