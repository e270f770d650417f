# JSON -> one "path<TAB>value" line per scalar (busybox awk). Paths join object
# keys and array indexes with '.'; strings keep the escapes \\ \n \t \r \b \f
# (and get \0NNN for \uXXXX), so `printf '%b'` turns a value back into its
# bytes, and a value never spans lines. Exit 1 on malformed input.
function fail(what) { printf "json-flat: %s at offset %d\n", what, pos > "/dev/stderr"; bad = 1; exit 1 }
function ws() { while (pos <= n && index(" \t\r\n", substr(s, pos, 1))) pos++ }
function hexval(h,   i, v) {
    v = 0
    for (i = 1; i <= 4; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(h, i, 1))) - 1
    return v
}
function oct(b) { return sprintf("\\0%03o", b) }
function utf8(cp) {  # code point -> escapes printf %b decodes
    if (cp < 128) return (cp < 32 || cp == 92 || cp == 127) ? oct(cp) : sprintf("%c", cp)
    if (cp < 2048) return oct(192 + int(cp / 64)) oct(128 + cp % 64)
    return oct(224 + int(cp / 4096)) oct(128 + int(cp / 64) % 64) oct(128 + cp % 64)
}
function str(   out, c) {
    pos++
    out = ""
    while (pos <= n) {
        if (match(substr(s, pos, 256), /^[^"\\]+/)) { out = out substr(s, pos, RLENGTH); pos += RLENGTH; continue }
        c = substr(s, pos, 1)
        if (c == "\"") { pos++; return out }
        c = substr(s, pos + 1, 1)
        pos += 2
        if (c == "u") { out = out utf8(hexval(substr(s, pos, 4))); pos += 4 }
        else if (c == "/" || c == "\"") out = out c
        else if (index("\\ntrbf", c)) out = out "\\" c
        else fail("bad escape")
    }
    fail("unterminated string")
}
function value(path,   c, k, i) {
    ws()
    c = substr(s, pos, 1)
    if (c == "{" || c == "[") {
        pos++
        ws()
        if (substr(s, pos, 1) == (c == "{" ? "}" : "]")) { pos++; return }
        for (i = 0; ; i++) {
            ws()
            if (c == "{") {
                if (substr(s, pos, 1) != "\"") fail("expected a key")
                k = str()
                ws()
                if (substr(s, pos, 1) != ":") fail("expected ':'")
                pos++
            } else k = i
            value(path == "" ? k : path "." k)
            ws()
            if (substr(s, pos, 1) == (c == "{" ? "}" : "]")) { pos++; return }
            if (substr(s, pos, 1) != ",") fail("expected ','")
            pos++
        }
    }
    if (c == "\"") { print path "\t" str(); return }
    if (match(substr(s, pos, 64), /^(true|false|null|-?[0-9][0-9.eE+-]*)/)) {
        print path "\t" substr(s, pos, RLENGTH); pos += RLENGTH; return
    }
    fail("expected a value")
}
{ s = s $0 "\n" }
END {
    if (bad) exit 1
    n = length(s); pos = 1
    value("")
    ws()
    if (pos <= n) fail("trailing data")
}
