"""Exceptions of the ppx package."""


class PpxError(Exception):
    """An error of the PPX / ppxd protocols.

    ``code`` is the ppxd query protocol's ErrorCode (an int, see
    :class:`ppx.query.ErrorCode`) when the server sent an Error, or the code of
    the local failure (MALFORMED for an undecodable buffer); ``message`` is the
    human-readable reason.
    """

    def __init__(self, code, message):
        self.code = code
        self.message = message
        super().__init__(code, message)

    @property
    def code_name(self):
        from .serve_wire import error_code_name
        return error_code_name(self.code)

    def __str__(self):
        if self.code is None:
            return self.message
        return "%s (%s): %s" % (self.code_name, self.code, self.message)


class DecodeError(PpxError):
    """A buffer that is not a valid message of the expected schema (truncated,
    corrupt, an unknown union tag, a tensor inconsistent with its shape...)."""

    MALFORMED = 1

    def __init__(self, message):
        super().__init__(self.MALFORMED, message)


class PpxTimeout(PpxError, TimeoutError):
    """No reply from the server within the client's timeout."""

    def __init__(self, message):
        super().__init__(None, message)

    def __str__(self):
        return "timeout: %s" % self.message
