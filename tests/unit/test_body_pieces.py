"""The request body's pieces between the HTTP parser and the app (`protocol.BodyPieces`)."""

from __future__ import annotations

from gateway.server.protocol import BodyPieces


def test_one_piece_reaches_the_app_as_the_parser_made_it() -> None:
    """A receive that finds one piece gets that very bytes object: no copy."""
    piece = bytes(range(256)) * 300
    pieces = BodyPieces()
    pieces += piece
    assert bytes(pieces) is piece
    assert len(pieces) == len(piece)


def test_several_pieces_are_joined_once_in_order() -> None:
    """Pieces that arrived between two receives come out as one, in order, their length
    counted for flow control as they arrive."""
    pieces = BodyPieces()
    for index, piece in enumerate((b"abc", b"", b"defg", b"h")):
        pieces += piece
        assert len(pieces) == len(b"abcdefgh"[: (3, 3, 7, 8)[index]])
    assert bytes(pieces) == b"abcdefgh"


def test_no_piece_is_an_empty_body() -> None:
    """A receive before any piece (a body that ended) reads as empty bytes."""
    assert bytes(BodyPieces()) == b""
