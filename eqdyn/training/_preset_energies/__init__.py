"""The energy files of the presets that train a custom energy (`e19-pconv-mnist`,
`l21-cifar10`). They ship inside eqdyn so that a preset finds its file from any working
directory and from an installed wheel; `PRESETS` names them by absolute path
(`eqdyn.training._presets.preset_energy`). Each is an ordinary energy file
(`eqdyn.models.load_energy_file`): copy one to start a variant of it."""
