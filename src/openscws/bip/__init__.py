"""Bearer Independent Protocol channels (ETSI TS 102 223 §6.4.27-31, §7.5.10-11): the card's
side (`card`) and the terminal's side (`terminal`), both sans-IO."""
