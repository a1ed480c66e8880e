"""Hostile object keys, each with what mediacanon must do with it when a row references it.

Sources: rclone's encoding test set (lib/encoder: control characters, leading and trailing spaces and dots,
`%`-escapes such as `%46`, characters Windows and other backends reserve, their full-width look-alikes, invalid
UTF-8), django-storages' `clean_name` / `safe_join` cases (`..`, `//`, leading `/`, trailing `/`), unicode
normalization (NFC vs NFD), URL encoding traps in S3 events (`+`, `%2B`, spaces), S3's 1,024-byte limit, and SQL
metacharacters. Every key lives under the `icons/` field (upload_to `icons/`, canonical `icons/{slug}{ext}`)
unless the point is to leave it.

Expectations:
- renamed: copied to `icons/<row slug><ext>`, mirrored, the row compare-and-swapped to it, the source retired
  after the row moved; bytes and headers identical.
- refused: the normalize step refuses it (UnsafeKeyError naming the key and the reason); nothing is copied,
  deleted or changed, the row keeps pointing at it.
- skipped: outside what mediacanon manages (a hidden/system file, an unmapped prefix): left alone.
- not_exercisable: the key cannot reach the steps through boto3 and the moto server (the reason says why);
  the test proves that limit and checks mediacanon's answer to the name itself.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class HostileKey:
    name: str
    key: str
    expect: str  # renamed | refused | skipped | not_exercisable
    row_can_reference: bool = True  # False: no Django row can hold this value (`why` says why)
    ext: str = ".png"  # the canonical key's extension, when renamed
    why: str = ""


_NFC = unicodedata.normalize("NFC", "icons/Café Zürich.png")
_NFD = unicodedata.normalize("NFD", "icons/Café Zürich.png")
assert _NFC != _NFD  # two distinct S3 keys that render the same

HOSTILE_KEYS: tuple[HostileKey, ...] = (
    # -- rclone's encoding set: control characters (category Cc) are refused: they break logs, CSV reports, XML
    HostileKey("nul", "icons/a\x00b.png", "refused", row_can_reference=False, why="PostgreSQL text cannot hold NUL"),
    HostileKey("soh", "icons/a\x01b.png", "refused"),
    HostileKey("tab", "icons/a\tb.png", "refused"),
    HostileKey("carriage-return", "icons/a\rb.png", "refused"),
    HostileKey("escape", "icons/a\x1bb.png", "refused"),
    HostileKey("unit-separator", "icons/a\x1fb.png", "refused"),
    HostileKey("del", "icons/a\x7fb.png", "refused"),
    HostileKey("c1-next-line", "icons/a\x85b.png", "refused"),
    HostileKey("c1-csi", "icons/a\x9bb.png", "refused"),
    HostileKey("newline", "icons/a\nb.png", "not_exercisable", why="the moto server answers 404 to a PUT whose key holds '\\n'"),
    # -- rclone: leading and trailing spaces and dots
    HostileKey("leading-space", "icons/ leading.png", "renamed"),
    HostileKey("trailing-space", "icons/trailing.png ", "renamed", ext="", why="'.png ' is not an extension"),
    HostileKey("only-spaces-name", "icons/   .png", "renamed"),
    HostileKey("trailing-dot", "icons/trailing.png.", "renamed", ext="", why="'.' is not an extension"),
    HostileKey("leading-dot-hidden", "icons/.hidden.png", "skipped", why="a hidden/system file, not media Django wrote"),
    HostileKey("double-leading-dot", "icons/..double.png", "skipped", why="starts with '.': hidden"),
    HostileKey("inner-double-dot", "icons/a..b.png", "renamed"),
    HostileKey("dot-segment", "icons/./a.png", "refused"),
    # -- rclone: percent escapes that must stay literal (decoded exactly once from the event)
    HostileKey("percent-46", "icons/%46ile.png", "renamed"),
    HostileKey("percent-2B", "icons/a%2Bb.png", "renamed"),
    HostileKey("percent-20", "icons/a%20b.png", "renamed"),
    HostileKey("percent-2F", "icons/a%2Fb.png", "renamed"),
    HostileKey("lone-percent", "icons/100%.png", "renamed"),
    HostileKey("bad-escape", "icons/%zz%.png", "renamed"),
    HostileKey("percent-25-2B", "icons/%252B.png", "renamed"),
    # -- rclone: characters other backends reserve, and their full-width look-alikes
    HostileKey("backslash", "icons/a\\b.png", "renamed"),
    HostileKey("colon", "icons/a:b.png", "renamed"),
    HostileKey("asterisk", "icons/a*b.png", "renamed"),
    HostileKey("question-mark", "icons/a?b.png", "renamed"),
    HostileKey("hash", "icons/a#b.png", "renamed"),
    HostileKey("double-quote", 'icons/a"b.png', "renamed"),
    HostileKey("angle-brackets", "icons/<a>.png", "renamed"),
    HostileKey("pipe", "icons/a|b.png", "renamed"),
    HostileKey("ampersand-equals", "icons/a&b=c.png", "renamed"),
    HostileKey("leading-tilde", "icons/~tilde.png", "renamed"),
    HostileKey("fullwidth", "icons/ｆｕｌｌ＼ｗｉｄｔｈ：＊？.png", "renamed"),
    HostileKey("control-pictures", "icons/␀␊␛.png", "renamed"),
    HostileKey("fullwidth-slash", "icons/a／b.png", "renamed"),
    HostileKey(
        "invalid-utf8",
        "icons/\udcbf.png",
        "not_exercisable",
        why="S3 keys are UTF-8 and boto3 encodes str keys as UTF-8: a lone surrogate (invalid UTF-8 bytes) cannot be sent",
    ),
    # -- unicode forms
    HostileKey("nfc", _NFC, "renamed"),
    HostileKey("nfd", _NFD, "renamed"),
    HostileKey("emoji-only", "icons/😀🎉.png", "renamed", why="no ASCII slug in the name: the row names it"),
    HostileKey("emoji-mixed", "icons/News 😀 Today.png", "renamed"),
    HostileKey("zwj-emoji", "icons/👩‍👩‍👧.png", "renamed"),
    HostileKey("rtl-override", "icons/gnp.\u202eevil.png", "renamed", why="a spoofed-looking name gets the row's plain one"),
    HostileKey("bom", "icons/\ufeffbom.png", "renamed"),
    HostileKey("zero-width-space", "icons/a\u200bb.png", "renamed"),
    HostileKey("line-separator", "icons/a\u2028b.png", "renamed", why="U+2028 is category Zl, not a control"),
    HostileKey("greek", "icons/Η Καθημερινή.png", "renamed"),
    HostileKey("cjk", "icons/朝日新聞.png", "renamed"),
    HostileKey("arabic", "icons/الأهرام.png", "renamed"),
    # -- URL encoding in events: '+' and spaces
    HostileKey("plus", "icons/a+b.png", "renamed"),
    HostileKey("space", "icons/a b.png", "renamed"),
    HostileKey("plus-and-space", "icons/a+ b+.png", "renamed"),
    HostileKey("upper-extension", "icons/LOUD.PNG", "renamed"),
    HostileKey("jpeg-alias", "icons/photo.JPEG", "renamed", ext=".jpg"),
    # -- length: S3's 1,024-byte limit
    # upper case, so the name is not canonical by itself ("icons/aaa...a.png" would be, and would be left as it is)
    HostileKey("1024-bytes", "icons/" + "A" * 1014 + ".png", "renamed"),
    HostileKey("1024-bytes-multibyte", "icons/" + "é" * 507 + ".png", "renamed"),
    HostileKey(
        "1025-bytes",
        "icons/" + "A" * 1015 + ".png",
        "refused",
        row_can_reference=False,
        why="longer than S3 allows (the moto server accepts it) and than any FileField (max_length <= 1024)",
    ),
    # -- paths: traversal, directory markers, empty and absolute segments
    HostileKey("dotdot-inside", "icons/../etc/passwd.png", "refused"),
    HostileKey("dotdot-leading", "../icons/x.png", "refused"),
    HostileKey("dotdot-trailing", "icons/sub/..", "refused"),
    HostileKey("directory-marker", "icons/folder/", "refused"),
    HostileKey("field-marker", "icons/", "refused"),
    HostileKey("empty-segment", "icons//double.png", "refused"),
    HostileKey("absolute", "/icons/abs.png", "refused"),
    HostileKey("nested", "icons/2024/05/nested.png", "renamed"),
    # -- SQL metacharacters (the adapter only ever sends parameters)
    HostileKey("single-quote", "icons/o'brien.png", "renamed"),
    HostileKey("sql-injection", "icons/x'; DROP TABLE archive_publicationsource;--.png", "renamed"),
    HostileKey("semicolon", "icons/a;b.png", "renamed"),
    HostileKey("sql-comment", "icons/a--b/*c*/d.png", "renamed"),
    HostileKey("dollar-quote", "icons/$$a$$.png", "renamed"),
    # -- outside what mediacanon manages
    HostileKey("unmapped-prefix", "elsewhere/x.png", "skipped"),
    HostileKey("case-of-prefix", "ICONS/x.png", "skipped", why="S3 keys are case-sensitive: not under 'icons/'"),
    HostileKey("reports-prefix", "mediacanon-reports/x.png", "skipped"),
)
