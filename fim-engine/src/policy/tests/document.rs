//! Editing through `PolicyDocument`: comments survive, invalid policies are never written.
