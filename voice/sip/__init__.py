"""SIP: the message parser (pure), the SIP front that owns the public port, and the pool of
pjsua2 worker processes that carry the calls. Only `voice.sip.pj` imports pjsua2, and only
worker processes import it."""
