"""What the tests share: the float64 references (:mod:`.reference`, :mod:`.reference_transpose`)
and the case tables (:mod:`.cases`)."""
