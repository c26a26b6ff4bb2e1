//! Table-driven tests of the gate policy (filled in below).
