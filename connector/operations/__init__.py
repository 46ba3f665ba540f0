"""What an operator sees of a replica as a whole: its status document, built from the pipelines, the
connections and the pauses (README "Operator controls")."""
