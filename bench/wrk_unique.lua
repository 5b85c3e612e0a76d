-- bench/wrk_unique.lua: bench/wrk.lua, but no two requests upload the same image bytes.
-- Every request's PNG carries one more chunk, right after IHDR: a private ancillary one
-- ("bnCh", valid, with its CRC) holding the run id (the "unique-image: <id>" argument), the
-- thread and a counter. So every request of every run is a cache miss that goes through the
-- cache lookup, as a real miss does. Building each request costs wrk a copy of the body.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk.lua")

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) == 1 then
      c = bit.bxor(0xEDB88320, bit.rshift(c, 1))
    else
      c = bit.rshift(c, 1)
    end
  end
  crc_table[i] = c
end

local function crc32(text)
  local crc = 0xFFFFFFFF
  for i = 1, #text do
    crc = bit.bxor(crc_table[bit.band(bit.bxor(crc, text:byte(i)), 0xFF)], bit.rshift(crc, 8))
  end
  return bit.bxor(crc, 0xFFFFFFFF)
end

local function be32(n)
  return string.char(bit.band(bit.rshift(n, 24), 0xFF), bit.band(bit.rshift(n, 16), 0xFF),
    bit.band(bit.rshift(n, 8), 0xFF), bit.band(n, 0xFF))
end

local sent = 0

function request()
  assert(run_id, "wrk_unique.lua needs the 'unique-image: <run id>' argument")
  sent = sent + 1
  local data = string.format("%s-%d-%d", run_id, thread_number, sent)
  local chunk = be32(#data) .. "bnCh" .. data .. be32(crc32("bnCh" .. data))
  return wrk.format(nil, nil, nil, head .. chunk .. rest)
end
