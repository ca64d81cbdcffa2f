"""Open and click tracking: signed tokens for the pixel and the click redirect (`tokens.py`),
one email's tracked URLs (`urls.py`), the redirect's target chosen only among the links Tailor
put in the email (`links.py`), and whether a hit came from a person or a machine
(`machines.py`). Pure: no I/O (`tailor.engagement.tracker` records the hits)."""
