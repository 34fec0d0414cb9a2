-- Wireshark dissector for OpenSIPS's 1.x Binary Internal Interface (BIN), shipped with pybin.
--
-- Install: `pybin dissector --install` (copies this file into Wireshark's personal Lua
-- plugins folder), or run once: `tshark -X lua_script:$(pybin dissector --path) -r x.pcap`.
--
-- Every UDP datagram that starts with "P4CK" is taken as BIN (a heuristic dissector, any
-- port); "Decode As... BIN" forces it on a port. Fields are named as `pybin decode --json`
-- names them: bin.module, bin.command, bin.checksum_ok, bin.dialog.call_id, bin.ul.aor, ...
--
--   | "P4CK" | checksum u32 | name_len i32 | module name | cmd i32 | field | field | ...
--
-- Integers travel in the sender's byte order (little-endian on x86-64; a preference picks
-- big-endian). The checksum is CRC-32 (reflected, 0xEDB88320, initial 0xFFFFFFFF) over
-- every byte after the first eight, with no final XOR. A string field is a 4-byte length
-- then the bytes. Packets are checked with the rules pybin applies (its README, "Where
-- pybin is stricter than 1.10.5"): where pybin refuses a packet this dissector adds an
-- expert item of the Malformed group, and it never raises a Lua error on bad input.
--
-- Modules are data: MODULES maps a module name (dialog, ul) to its commands, each an ordered
-- list of {name, type} like pybin's own field tables. A module without an entry shows its
-- body raw.

local bin_proto = Proto("bin", "OpenSIPS Binary Internal Interface (1.x)")

---------------------------------------------------------------------------------------
-- The modules, as data
---------------------------------------------------------------------------------------

-- RAW: a C integer sent as its own bytes inside a string field (usrloc's time_t and
-- qvalue_t): 4 or 8 bytes, signed, in the sender's byte order (pybin's RawInt).
local STR, INT, PAIRS, BYTES, RAW = "str", "int", "pairs", "bytes", "raw"

-- DLG_STATE_* in dialog/dlg_hash.h, named as pybin's DlgState.
local DLG_STATES = {
    [1] = "UNCONFIRMED", [2] = "EARLY", [3] = "CONFIRMED_NA", [4] = "CONFIRMED", [5] = "DELETED",
}

-- DLG_FLAG_* in dialog/dlg_hash.h, as pybin's DlgFlag (NEW, CHANGED, VP_CHANGED never travel).
local DLG_FLAGS = {
    {0x001, "NEW"}, {0x002, "CHANGED"}, {0x004, "HASBYE"}, {0x008, "BYEONTIMEOUT"},
    {0x010, "ISINIT"}, {0x020, "PING_CALLER"}, {0x040, "PING_CALLEE"}, {0x080, "TOPHIDING"},
    {0x100, "VP_CHANGED"}, {0x200, "DB_DELETED"}, {0x400, "TOPH_KEEP_USER"},
}

-- replicate_dialog_created / _updated in dialog/dlg_replication.c (pybin.dialog.DIALOG_FIELDS).
local DIALOG_FIELDS = {
    {"call_id", STR, "Call-ID"},
    {"from_tag", STR, "caller leg's tag"},
    {"to_tag", STR, "callee leg's tag"},
    {"from_uri", STR, "From URI"},
    {"to_uri", STR, "To URI"},
    {"h_id", INT, "dialog id inside its hash bucket"},
    {"start_ts", INT, "start, unix seconds", time = true},
    {"state", INT, "dialog state", enum = DLG_STATES},
    {"caller_sock", STR, "caller leg's local socket"},
    {"callee_sock", STR, "callee leg's local socket"},
    {"caller_cseq", STR, "caller leg's cseq"},
    {"callee_cseq", STR, "callee leg's cseq"},
    {"caller_route_set", STR, "caller leg's route set"},
    {"callee_route_set", STR, "callee leg's route set"},
    {"caller_contact", STR, "caller contact"},
    {"callee_contact", STR, "callee contact"},
    {"callee_from_uri", STR, "From URI as mangled towards the callee"},
    {"callee_to_uri", STR, "To URI as mangled towards the callee"},
    {"vars", PAIRS, "dialog variables"},
    {"profiles", PAIRS, "dialog profiles"},
    {"user_flags", INT, "script flags (set_dlg_flag)"},
    {"flags", INT, "internal flags", bits = DLG_FLAGS},
    {"timeout", INT, "absolute expiry, unix seconds", time = true},
    {"caller_last_gen_cseq", INT, "last cseq generated towards the caller"},
    {"callee_last_gen_cseq", INT, "last cseq generated towards the callee"},
}

local function dialog_info(command, v)
    if command == 3 then
        return string.format("call_id=%s tags=%s/%s", v.call_id, v.from_tag, v.to_tag)
    end
    return string.format("call_id=%s tags=%s/%s state=%d cseq=%s/%s timeout=%d",
        v.call_id, v.from_tag, v.to_tag, v.state, v.caller_cseq, v.callee_cseq, v.timeout)
end

-- command number -> {name = pybin's word for it, fields = the fields in wire order}
local DIALOG_COMMANDS = {
    [1] = {name = "created", fields = DIALOG_FIELDS},
    [2] = {name = "updated", fields = DIALOG_FIELDS},
    [3] = {name = "deleted", fields = {DIALOG_FIELDS[1], DIALOG_FIELDS[2], DIALOG_FIELDS[3]}},
}

-- flags_t in usrloc/ucontact.h, as pybin's usrloc.ContactFlag.
local UL_CONTACT_FLAGS = {
    {0x001, "MEM"},
}

-- METHOD_* in parser/msg_parser.h, as pybin's usrloc.Method (all bits set: ALL_METHODS).
local SIP_METHODS = {
    {0x0001, "INVITE"}, {0x0002, "CANCEL"}, {0x0004, "ACK"}, {0x0008, "BYE"}, {0x0010, "INFO"},
    {0x0020, "OPTIONS"}, {0x0040, "UPDATE"}, {0x0080, "REGISTER"}, {0x0100, "MESSAGE"},
    {0x0200, "SUBSCRIBE"}, {0x0400, "NOTIFY"}, {0x0800, "PRACK"}, {0x1000, "REFER"},
    {0x2000, "PUBLISH"}, {0x4000, "OTHER"},
}

-- replicate_ucontact_insert / _update in usrloc/ureplication.c (pybin.usrloc.CONTACT_FIELDS);
-- the other commands push some of these (UL_COMMANDS).
local UL_CONTACT_FIELDS = {
    {"domain", STR, "usrloc table, e.g. location"},
    {"aor", STR, "address of record"},
    {"contact", STR, "Contact URI"},
    {"call_id", STR, "Call-ID of the REGISTER"},
    {"user_agent", STR, "User-Agent"},
    {"path", STR, "Path"},
    {"attr", STR, "attributes"},
    {"received", STR, "source address, when it differs from the Contact"},
    {"instance", STR, "+sip.instance"},
    {"expires", RAW, "absolute expiry, unix seconds (time_t; 0: permanent)", time = true},
    {"q", RAW, "q-value x 1000 (qvalue_t; -1: the Contact had none)", q = true},
    {"sock", STR, "local socket the REGISTER came in on"},
    {"cseq", INT, "CSeq of the REGISTER"},
    {"flags", INT, "internal flags", bits = UL_CONTACT_FLAGS},
    {"cflags", INT, "branch flags", hex = true},
    {"methods", INT, "SIP methods the contact supports", bits = SIP_METHODS},
    {"last_modified", RAW, "last change, unix seconds (time_t)", time = true},
}

-- The fields of UL_CONTACT_FIELDS with these names, in this order.
local function ul_fields(...)
    local picked = {}
    for _, name in ipairs({...}) do
        for _, field in ipairs(UL_CONTACT_FIELDS) do
            if field[1] == name then table.insert(picked, field) end
        end
    end
    return picked
end

-- REPL_URECORD_* / REPL_UCONTACT_* in usrloc/ureplication.h (pybin.usrloc.UlCommand)
local UL_COMMANDS = {
    [1] = {name = "record_insert", fields = ul_fields("domain", "aor")},
    [2] = {name = "record_delete", fields = ul_fields("domain", "aor")},
    [3] = {name = "contact_insert", fields = UL_CONTACT_FIELDS},
    [4] = {name = "contact_update", fields = UL_CONTACT_FIELDS},
    [5] = {name = "contact_delete", fields = ul_fields("domain", "aor", "contact", "call_id", "cseq")},
}

local function ul_info(command, v)
    if command <= 2 then
        return string.format("domain=%s aor=%s", v.domain, v.aor)
    end
    if command == 5 then
        return string.format("aor=%s contact=%s call_id=%s cseq=%d", v.aor, v.contact, v.call_id, v.cseq)
    end
    return string.format("aor=%s contact=%s call_id=%s cseq=%d expires=%s q=%s", v.aor, v.contact, v.call_id,
        v.cseq, v.expires, v.q)
end

-- module name -> {commands = DIALOG_COMMANDS..., info = function(cmd, values) for the Info
--                 column (given only complete packets), unchecked = {pops = how many first
--                 pops the C reader does not check, note = what follows},
--                 sip = {field =, method =, first =}: link to the SIP request of that method
--                 with the field's Call-ID (the first in the capture, or else the last before)}
local MODULES = {
    dialog = {
        commands = DIALOG_COMMANDS,
        info = dialog_info,
        -- dlg_replication.c pops call_id, tags and URIs without looking at the result
        unchecked = {pops = 5, note = "1.10 does not check its first 5 pops: a receiver reads past the datagram"},
        sip = {field = "call_id", method = "INVITE", first = true,
            description = "the first SIP INVITE with this Call-ID"},
    },
    ul = {
        commands = UL_COMMANDS,
        info = ul_info,
        -- ureplication.c looks at no bin_pop_* result: a field it cannot pop keeps an older value
        unchecked = {pops = #UL_CONTACT_FIELDS, note = "usrloc (1.11, 2.1) checks none of its pops: "
            .. "a receiver goes on with the field's previous or uninitialised value"},
        sip = {field = "call_id", method = "REGISTER", first = false,
            description = "the last SIP REGISTER with this Call-ID before this packet"},
    },
}

---------------------------------------------------------------------------------------
-- Fields
---------------------------------------------------------------------------------------

local CHECKSUM_STATUS = {[0] = "Bad", [1] = "Good", [2] = "Unverified"}

local hf = {
    marker = ProtoField.string("bin.marker", "Marker", base.ASCII, "\"P4CK\""),
    checksum = ProtoField.uint32("bin.checksum", "Checksum", base.HEX,
        nil, nil, "as stored: CRC-32 over the bytes after the header, no final XOR"),
    checksum_computed = ProtoField.uint32("bin.checksum.computed", "Computed checksum", base.HEX),
    checksum_status = ProtoField.uint8("bin.checksum.status", "Checksum status", base.DEC, CHECKSUM_STATUS),
    checksum_ok = ProtoField.bool("bin.checksum_ok", "Checksum OK", base.NONE, nil, nil,
        "the stored checksum equals the computed one (pybin's checksum_ok)"),
    name_len = ProtoField.int32("bin.name_len", "Module name length"),
    module = ProtoField.string("bin.module", "Module", base.ASCII),
    command = ProtoField.int32("bin.command", "Command"),
    length = ProtoField.int32("bin.length", "Length", base.DEC, nil, nil, "a string field's length prefix"),
    body = ProtoField.bytes("bin.body", "Body", base.NONE, "the fields after the command, not decoded"),
    trailing = ProtoField.bytes("bin.trailing", "Bytes after the last field"),
}

-- per module: field name -> ProtoField (and .pair/.name/.value for pairs, .bits for flags)
local module_hf = {}
-- per module and pairs field: {pair =, name =, value =}
local pair_hf = {}
-- per module and flags field: {ProtoField per bit}
local bit_hf = {}
-- per module: the generated link to the SIP INVITE
local sip_hf = {}
-- per module: the subtree holding its fields (bin.dialog matches every dialog packet)
local body_hf = {}

for module, spec in pairs(MODULES) do
    module_hf[module], pair_hf[module], bit_hf[module] = {}, {}, {}
    local prefix = "bin." .. module .. "."
    body_hf[module] = ProtoField.none("bin." .. module, module, "a " .. module .. " packet's fields")
    for _, command in pairs(spec.commands) do
        for _, field in ipairs(command.fields) do
            local name, kind, desc = field[1], field[2], field[3]
            if not module_hf[module][name] then
                local abbr = prefix .. name
                if kind == INT then
                    module_hf[module][name] = ProtoField.uint32(abbr, name,
                        (field.bits or field.hex) and base.HEX or base.DEC, field.enum, nil, desc)
                elseif kind == RAW then
                    module_hf[module][name] = ProtoField.int64(abbr, name, base.DEC, nil, nil, desc)
                elseif kind == BYTES then
                    module_hf[module][name] = ProtoField.bytes(abbr, name, base.NONE, desc)
                else
                    module_hf[module][name] = ProtoField.string(abbr, name, base.ASCII, desc)
                end
                if kind == PAIRS then
                    pair_hf[module][name] = {
                        pair = ProtoField.none(abbr .. ".pair", "pair", "one name#value| pair, escaped"),
                        name = ProtoField.string(abbr .. ".name", "name", base.ASCII, "unescaped"),
                        value = ProtoField.string(abbr .. ".value", "value", base.ASCII, "unescaped"),
                    }
                end
                if field.bits then
                    bit_hf[module][name] = {}
                    for _, bit_spec in ipairs(field.bits) do
                        table.insert(bit_hf[module][name], ProtoField.bool(
                            abbr .. "." .. bit_spec[2]:lower(), bit_spec[2], 32, nil, bit_spec[1]))
                    end
                end
            end
        end
    end
    if spec.sip then
        sip_hf[module] = ProtoField.framenum(prefix .. "sip_" .. spec.sip.method:lower(),
            "SIP " .. spec.sip.method .. " in frame", base.NONE, frametype.REQUEST, nil, spec.sip.description)
    end
end

do
    local all = {}
    for _, f in pairs(hf) do table.insert(all, f) end
    for module in pairs(MODULES) do
        for _, f in pairs(module_hf[module]) do table.insert(all, f) end
        for _, p in pairs(pair_hf[module]) do
            table.insert(all, p.pair); table.insert(all, p.name); table.insert(all, p.value)
        end
        for _, bits in pairs(bit_hf[module]) do
            for _, f in ipairs(bits) do table.insert(all, f) end
        end
        if sip_hf[module] then table.insert(all, sip_hf[module]) end
        table.insert(all, body_hf[module])
    end
    bin_proto.fields = all
end

local MALFORMED, ERROR, WARN, NOTE = expert.group.MALFORMED, expert.severity.ERROR, expert.severity.WARN,
    expert.severity.NOTE
local ei = {
    runt = ProtoExpert.new("bin.runt", "Shorter than 18 bytes: a receiver drops it", MALFORMED, ERROR),
    old_runt = ProtoExpert.new("bin.runt.old_releases",
        "Shorter than 20 bytes: 1.10.0-1.10.3 and 1.11.0-1.11.3 drop it", expert.group.PROTOCOL, NOTE),
    bad_marker = ProtoExpert.new("bin.marker.bad", "Marker is not P4CK: a receiver drops it", MALFORMED, ERROR),
    bad_checksum = ProtoExpert.new("bin.checksum.bad", "Bad checksum: a receiver drops it",
        expert.group.CHECKSUM, ERROR),
    bad_name = ProtoExpert.new("bin.name_len.bad", "Module name runs past the end", MALFORMED, ERROR),
    unknown_module = ProtoExpert.new("bin.module.unknown", "Module not described by this dissector",
        expert.group.UNDECODED, NOTE),
    unknown_command = ProtoExpert.new("bin.command.unknown", "Unknown command", MALFORMED, ERROR),
    truncated = ProtoExpert.new("bin.truncated", "A field runs past the end of the datagram", MALFORMED, ERROR),
    negative = ProtoExpert.new("bin.length.negative", "Negative string length", MALFORMED, ERROR),
    bad_pairs = ProtoExpert.new("bin.pairs.bad", "Not exact name#value| pairs", MALFORMED, WARN),
    trailing = ProtoExpert.new("bin.trailing.bytes", "Bytes after the last field", MALFORMED, WARN),
    bad_raw_int = ProtoExpert.new("bin.raw_int.bad", "A C integer field is not 4 or 8 bytes long", MALFORMED, ERROR),
    nul = ProtoExpert.new("bin.string.nul", "Text holds a NUL byte", expert.group.PROTOCOL, NOTE),
    short_capture = ProtoExpert.new("bin.short_capture", "Packet cut short by the capture",
        expert.group.UNDECODED, WARN),
}
bin_proto.experts = {ei.runt, ei.old_runt, ei.bad_marker, ei.bad_checksum, ei.bad_name, ei.unknown_module,
    ei.unknown_command, ei.truncated, ei.negative, ei.bad_pairs, ei.trailing, ei.bad_raw_int, ei.nul,
    ei.short_capture}

bin_proto.prefs.big_endian = Pref.bool("Big-endian integers", false,
    "The sender wrote its integers big-endian (a big-endian machine); x86-64 senders are little-endian")

---------------------------------------------------------------------------------------
-- Checksum: crc32_uint() of OpenSIPS crc.c
---------------------------------------------------------------------------------------

-- BitOp ("bit") comes with every Wireshark Lua; its results are signed 32-bit numbers.
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local TWO32 = 4294967296

local CRC_TABLE = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) ~= 0 then c = bxor(rshift(c, 1), 0xEDB88320) else c = rshift(c, 1) end
    end
    CRC_TABLE[i] = c
end

local function crc_no_final_xor(bytes)
    local c = -1 -- 0xFFFFFFFF
    local byte = string.byte
    for i = 1, #bytes do
        c = bxor(CRC_TABLE[band(bxor(c, byte(bytes, i)), 0xFF)], rshift(c, 8))
    end
    return c % TWO32
end

---------------------------------------------------------------------------------------
-- Pairs: read_dialog_vars / read_dialog_profiles, with pybin's strictness
---------------------------------------------------------------------------------------

-- name#value| repeated; a backslash escapes |, # and \. Returns the pairs (each with its
-- unescaped name and value and its place in `s`) and, when `s` is not exact pairs, what
-- is wrong (the words of pybin.dialog._pairs_problem, offsets from 0).
local function split_pairs(s)
    local found = {}
    local parts, part = {{}, {}}, 1
    local start, i, n = 1, 1, #s
    while i <= n do
        local j = string.find(s, "[\\|#]", i)
        if not j then
            table.insert(parts[part], string.sub(s, i))
            break
        end
        table.insert(parts[part], string.sub(s, i, j - 1))
        local c = string.sub(s, j, j)
        if c == "\\" then
            local escaped = string.sub(s, j + 1, j + 1)
            if escaped ~= "\\" and escaped ~= "|" and escaped ~= "#" then
                return found, string.format("backslash at %d escapes nothing that needs escaping", j - 1)
            end
            table.insert(parts[part], escaped)
            i = j + 2
        elseif c == "#" then
            if part == 2 then
                return found, string.format("second unescaped '#' at %d in one pair", j - 1)
            end
            part = 2
            i = j + 1
        else -- "|"
            if part == 1 then
                return found, string.format("'|' at %d ends a pair that has no '#'", j - 1)
            end
            table.insert(found, {name = table.concat(parts[1]), value = table.concat(parts[2]),
                start = start - 1, len = j - start + 1})
            parts, part, start = {{}, {}}, 1, j + 1
            i = j + 1
        end
    end
    if start <= n then
        return found, "the last pair is not closed by '|'"
    end
    return found, nil
end

---------------------------------------------------------------------------------------
-- SIP request index: method -> Call-ID -> the frames carrying such a request with it
---------------------------------------------------------------------------------------

-- Field extractors fail only where SIP's fields are missing: then there is no link.
local have_sip, sip_call_id, sip_method = pcall(function()
    return Field.new("sip.Call-ID"), Field.new("sip.Method")
end)
local LINKED_METHODS = {}
for _, spec in pairs(MODULES) do
    if spec.sip then LINKED_METHODS[spec.sip.method] = true end
end
-- requests[method][call_id] = {[frame] = true}; a frame is seen again on each redissection
local requests = {}

local sip_index = Proto("bin_sip_index", "BIN: index of SIP requests by Call-ID")
function sip_index.init()
    requests = {}
end
function sip_index.dissector(tvb, pinfo, tree)
    for _, m in ipairs({sip_method()}) do
        local method = tostring(m.value)
        if LINKED_METHODS[method] then
            requests[method] = requests[method] or {}
            for _, id in ipairs({sip_call_id()}) do
                local key = tostring(id.value)
                requests[method][key] = requests[method][key] or {}
                requests[method][key][pinfo.number] = true
            end
        end
    end
end
if have_sip then
    register_postdissector(sip_index)
end

-- The first frame of the capture with that request, or (first == false) the last one before `now`.
local function sip_request_frame(method, call_id, first, now)
    local frames = requests[method] and requests[method][call_id]
    local found
    for frame in pairs(frames or {}) do
        if first then
            if not found or frame < found then found = frame end
        elseif frame < now and (not found or frame > found) then
            found = frame
        end
    end
    return found
end

---------------------------------------------------------------------------------------
-- The dissector
---------------------------------------------------------------------------------------

local MIN_PACKET = 18 -- MIN_BIN_PACKET_SIZE in 1.10.4+: header, name length, command, 2-byte name
local OLD_MIN_PACKET = 20

-- One datagram's reading state: byte order, tree, the first problem found. `size` is the
-- datagram's length, `captured` what the capture holds of it (less with a short snaplen):
-- rules are judged against the datagram, and reading stops where the capture does.
local Reader = {}
Reader.__index = Reader

local function new_reader(tvb, root, frame)
    return setmetatable({tvb = tvb, root = root, frame = frame, size = tvb:reported_len(), captured = tvb:len(),
        big = bin_proto.prefs.big_endian, problem = nil}, Reader)
end

-- The captured part of `n` bytes at `offset` (offset is never past the capture).
function Reader:range(offset, n)
    return self.tvb(offset, math.min(n, self.captured - offset))
end

-- Whether the capture holds the datagram up to `stop`; the reading stops where it does not
-- (the expert item saying the capture is short was added at the start).
function Reader:captured_to(stop)
    return stop <= self.captured
end

function Reader:u32(offset)
    local r = self.tvb(offset, 4)
    return self.big and r:uint() or r:le_uint()
end

function Reader:i32(offset)
    local r = self.tvb(offset, 4)
    return self.big and r:int() or r:le_int()
end

-- add an integer item in the packet's byte order
function Reader:add_int(tree, field, offset)
    local r = self.tvb(offset, 4)
    if self.big then return tree:add(field, r) end
    return tree:add_le(field, r)
end

-- an expert item; the first Malformed one also marks the Info column
function Reader:flag(item, expert_field, text, malformed)
    item:add_proto_expert_info(expert_field, text)
    if malformed and not self.problem then self.problem = text end
end

function Reader:rest(tree, field, offset)
    if offset < self.captured then
        tree:add(field, self:range(offset, self.size - offset))
    end
end

-- Whether 4 bytes are left at `offset` for an integer or a length (flagged when not).
function Reader:has4(tree, name, offset, unchecked)
    local left = self.size - offset
    if left >= 4 then return self:captured_to(offset + 4) end
    self:flag(tree:add(self:range(offset, left), name .. ": [truncated]"), ei.truncated,
        string.format("%s: length needs 4 bytes at offset %d, %d left", name, offset, left) .. unchecked, true)
    return false
end

-- A string's length prefix at `offset`; nil (after flagging) when it cannot be used.
function Reader:string_length(tree, name, offset, unchecked)
    if not self:has4(tree, name, offset, unchecked) then return nil end
    local left = self.size - offset
    local n = self:i32(offset)
    if n < 0 then
        local item = tree:add(self.tvb(offset, 4), name .. ": [negative length]")
        self:add_int(item, hf.length, offset)
        self:flag(item, ei.negative, string.format(
            "%s: negative length %d at offset %d (pybin refuses it; 1.10 passes it on)", name, n, offset), true)
        return nil
    end
    if n > left - 4 then
        local item = tree:add(self:range(offset, left), name .. ": [runs past the end]")
        self:add_int(item, hf.length, offset)
        self:flag(item, ei.truncated, string.format("%s: %d bytes at offset %d run past the end (%d left)",
            name, n, offset + 4, left - 4) .. unchecked, true)
        return nil
    end
    if not self:captured_to(offset + 4 + n) then
        self:add_int(tree:add(self:range(offset, 4 + n), name .. ": [cut short by the capture]"), hf.length, offset)
        return nil
    end
    return n
end

function Reader:add_text(tree, field, offset, n, name)
    local raw = self.tvb:raw(offset + 4, n)
    local item = tree:add(field, self.tvb(offset + 4, n), raw)
    self:add_int(item, hf.length, offset)
    local nul = string.find(raw, "\0", 1, true)
    if nul then
        self:flag(item, ei.nul, string.format(
            "%s holds a NUL byte at %d: the text shown stops there; the packet bytes hold all of it",
            name, nul - 1), false)
    end
    return item, raw
end

function Reader:add_pairs(tree, fields, item, raw, name, offset)
    local found, problem = split_pairs(raw)
    local noun = #found == 1 and "pair" or "pairs"
    item:append_text(string.format(" (%d %s)", #found, noun))
    for _, pair in ipairs(found) do
        local sub = item:add(fields.pair, self.tvb(offset + 4 + pair.start, pair.len))
        sub:set_text(pair.name .. " = " .. pair.value)
        sub:add(fields.name, self.tvb(offset + 4 + pair.start, pair.len), pair.name)
        sub:add(fields.value, self.tvb(offset + 4 + pair.start, pair.len), pair.value)
    end
    if problem then
        self:flag(item, ei.bad_pairs, name .. ": " .. problem ..
            " (pybin refuses the packet; 1.10 skips what it cannot read)", true)
    end
end

function Reader:add_flag_bits(item, bits, offset, value)
    local names = {}
    for _, f in ipairs(bits.fields) do self:add_int(item, f, offset) end
    for _, spec in ipairs(bits.spec) do
        if band(value, spec[1]) ~= 0 then table.insert(names, spec[2]) end
    end
    local known = 0
    for _, spec in ipairs(bits.spec) do known = known + spec[1] end
    local unknown = band(value, bit.bnot(known)) % TWO32
    if unknown ~= 0 then table.insert(names, string.format("0x%x", unknown)) end
    if #names > 0 then item:append_text(" (" .. table.concat(names, "|") .. ")") end
end

-- unix seconds as a date (a C library may not represent every time: then nothing is shown)
local function append_date(item, seconds)
    if seconds == 0 then return end
    local ok, date = pcall(os.date, "! (%Y-%m-%d %H:%M:%S UTC)", seconds)
    if ok and type(date) == "string" then item:append_text(date) end
end

-- q2str() of qvalue.h, as pybin's usrloc.q_text: "" when unspecified, "1", "0", "0.5"
local function q_text(q)
    if q == -1 then return "no q" end
    if q >= 1000 then return "q=1" end
    if q <= 0 then return "q=0" end
    return "q=0." .. (string.format("%03d", q):gsub("0+$", ""))
end

-- A RAW field whose length prefix at `offset` said `n`: the integer as exact decimal text
-- (a Lua number cannot hold every 64-bit one), or nil (after flagging) when `n` is not 4
-- or 8 (pybin refuses it; a C receiver memcpy()s sizeof bytes).
function Reader:add_raw_int(tree, field, f, offset, n)
    local name = field[1]
    if n ~= 4 and n ~= 8 then
        local item = tree:add(self.tvb(offset, 4 + n), name .. ": [not a C integer]")
        self:add_int(item, hf.length, offset)
        local receiver = n == 0 and "a receiver memcpy()s from NULL" or "a receiver copies sizeof bytes from "
            .. "where the field starts"
        self:flag(item, ei.bad_raw_int, string.format("%s: a C integer travels in 4 or 8 bytes, this one in %d "
            .. "(pybin refuses it; %s)", name, n, receiver), true)
        return nil
    end
    local r = self.tvb(offset + 4, n)
    local value
    if n == 4 then
        value = self.big and r:int() or r:le_int()
    else
        value = self.big and r:int64() or r:le_int64()
    end
    local item = self.big and tree:add(f, r) or tree:add_le(f, r)
    self:add_int(item, hf.length, offset)
    local number = n == 4 and value or value:tonumber()
    if field.time then append_date(item, number) end
    if field.q then item:append_text(" (" .. q_text(number) .. ")") end
    return tostring(value)
end

-- The fields of one command; returns the values read (by name) and whether all were.
function Reader:fields(tree, module, spec, command, offset)
    local values = {}
    for index, field in ipairs(command.fields) do
        local name, kind = field[1], field[2]
        local unchecked = ""
        if spec.unchecked and index <= spec.unchecked.pops then
            unchecked = " (" .. spec.unchecked.note .. ")"
        end
        local f = module_hf[module][name]
        if kind == INT then
            if not self:has4(tree, name, offset, unchecked) then return values, false, offset end
            local value = self:u32(offset)
            local item = self:add_int(tree, f, offset)
            if field.time then append_date(item, value) end
            if field.bits then
                self:add_flag_bits(item, {fields = bit_hf[module][name], spec = field.bits}, offset, value)
            end
            values[name] = value
            offset = offset + 4
        else
            local n = self:string_length(tree, name, offset, unchecked)
            if not n then return values, false, offset end
            if kind == RAW then
                local value = self:add_raw_int(tree, field, f, offset, n)
                if value == nil then return values, false, offset end
                values[name] = value
            elseif kind == BYTES then
                local item = tree:add(f, self.tvb(offset + 4, n))
                self:add_int(item, hf.length, offset)
                values[name] = self.tvb:raw(offset + 4, n)
            else
                local item, raw = self:add_text(tree, f, offset, n, name)
                if kind == PAIRS then
                    self:add_pairs(tree, pair_hf[module][name], item, raw, name, offset)
                end
                values[name] = raw
            end
            offset = offset + 4 + n
        end
    end
    return values, true, offset
end

function Reader:link_sip(tree, module, spec, values, now)
    local call_id = spec.sip and values[spec.sip.field]
    local frame = call_id and sip_request_frame(spec.sip.method, call_id, spec.sip.first, now)
    if frame then
        tree:add(sip_hf[module], frame):set_generated()
    end
end

-- The whole datagram, in the receiver's order of checks; returns the Info text.
function Reader:dissect()
    local tvb, root, size = self.tvb, self.root, self.size
    if self.captured < size then
        self:flag(root, ei.short_capture, string.format("the capture holds %d of the datagram's %d bytes: "
            .. "the checksum is not verified and the fields stop there", self.captured, size), false)
    end
    if size < MIN_PACKET then
        local item = root:add(hf.body, self:range(0, size))
        self:flag(item, ei.runt, string.format("%d bytes, shorter than %d: a receiver drops it", size, MIN_PACKET),
            true)
        return string.format("runt, %d bytes", size)
    end
    if not self:captured_to(12) then
        self:rest(root, hf.body, 0)
        return "BIN"
    end
    local marker = tvb:raw(0, 4)
    local marker_item = root:add(hf.marker, tvb(0, 4), marker)
    if marker ~= "P4CK" then
        self:flag(marker_item, ei.bad_marker, "marker is not P4CK: a receiver drops it", true)
        self:rest(root, hf.body, 4)
        return "not a BIN packet"
    end
    if size < OLD_MIN_PACKET then
        self:flag(root, ei.old_runt, string.format("%d bytes: 1.10.0-1.10.3 and 1.11.0-1.11.3 drop datagrams "
            .. "shorter than %d bytes", size, OLD_MIN_PACKET), false)
    end
    local stored = self:u32(4)
    local checksum_item = self:add_int(root, hf.checksum, 4)
    local checksum_ok
    if self.captured == size then
        local computed = crc_no_final_xor(tvb:raw(8, size - 8))
        checksum_ok = computed == stored
        root:add(hf.checksum_computed, tvb(4, 4), computed):set_generated()
        checksum_item:add(hf.checksum_status, tvb(4, 4), checksum_ok and 1 or 0):set_generated()
        root:add(hf.checksum_ok, tvb(4, 4), checksum_ok):set_generated()
        if checksum_ok then
            checksum_item:append_text(" [correct]")
        else
            checksum_item:append_text(string.format(" [incorrect, should be 0x%08x]", computed))
            self:flag(checksum_item, ei.bad_checksum, string.format(
                "stored 0x%08x, computed 0x%08x: a receiver drops it", stored, computed), false)
        end
    else
        checksum_item:add(hf.checksum_status, tvb(4, 4), 2):set_generated()
    end
    local bad = checksum_ok == false and " BAD-CHECKSUM" or ""

    local name_len = self:i32(8)
    local name_len_item = self:add_int(root, hf.name_len, 8)
    if name_len < 0 or name_len > size - 16 then
        self:flag(name_len_item, ei.bad_name, string.format("name length %d in a %d-byte datagram", name_len, size),
            true)
        self:rest(root, hf.body, 12)
        return "module name runs past the end" .. bad
    end
    if not self:captured_to(16 + name_len) then
        self:rest(root, hf.body, 12)
        return "BIN"
    end
    local module = tvb:raw(12, name_len)
    root:add(hf.module, tvb(12, name_len), module)
    local command = self:i32(12 + name_len)
    local command_item = self:add_int(root, hf.command, 12 + name_len)
    local offset = 16 + name_len

    local spec = MODULES[module]
    if not spec then
        self:flag(command_item, ei.unknown_module, string.format(
            "module %q is not described here: its body is shown raw", module), false)
        self:rest(root, hf.body, offset)
        return string.format("%s cmd=%d%s %d bytes", module, command, bad, size)
    end
    local cmd = spec.commands[command]
    if not cmd then
        local known = {}
        for number, c in pairs(spec.commands) do table.insert(known, string.format("%d %s", number, c.name)) end
        table.sort(known)
        self:flag(command_item, ei.unknown_command, string.format("unknown %s command %d (%s)", module, command,
            table.concat(known, ", ")), true)
        self:rest(root, hf.body, offset)
        return string.format("%s cmd=%d%s %d bytes", module, command, bad, size)
    end
    command_item:append_text(" (" .. cmd.name .. ")")

    local tree = root:add(body_hf[module], self:range(offset, size - offset))
    tree:set_text(string.format("%s %s", module, cmd.name))
    local values, complete, stop = self:fields(tree, module, spec, cmd, offset)
    self:link_sip(tree, module, spec, values, self.frame)
    local summary = string.format("%s %s%s", module, cmd.name, bad)
    if not complete then
        return summary
    end
    if stop < size then
        local item = root:add(hf.trailing, self:range(stop, size - stop))
        local last = cmd.fields[#cmd.fields][1]
        self:flag(item, ei.trailing, string.format("%d bytes after the last field (%s): 1.10 ignores them, "
            .. "pybin refuses the packet", size - stop, last), true)
    end
    if spec.info then
        summary = summary .. " " .. spec.info(command, values)
    end
    return summary
end

local function dissect(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    pinfo.cols.protocol = "BIN"
    local root = tree:add(bin_proto, tvb())
    local r = new_reader(tvb, root, pinfo.number)
    local info = r:dissect()
    if r.problem then
        info = info .. " [Malformed: " .. r.problem .. "]"
    elseif r.captured < r.size then
        info = info .. " [cut short by the capture]"
    end
    pinfo.cols.info:set(info)
    root:append_text(", " .. info)
    return tvb:len()
end

local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 4 or tvb:raw(0, 4) ~= "P4CK" then
        return false
    end
    dissect(tvb, pinfo, tree)
    return true
end

bin_proto.dissector = dissect

bin_proto:register_heuristic("udp", heuristic)
DissectorTable.get("udp.port"):add_for_decode_as(bin_proto)
