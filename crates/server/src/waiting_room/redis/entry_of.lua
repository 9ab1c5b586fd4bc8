-- ARGV[12] user.
open_if_due()
local rec = live(ARGV[12])
if not rec then return { 'none' } end
return view_of(ARGV[12], rec)
