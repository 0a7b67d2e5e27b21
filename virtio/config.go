package virtio

// ReadConfigSpace copies space[offset:] into data for any offset and width:
// bytes past the end of space, or whose offset overflows, read as zero. It
// is how a device with a fixed, read-only layout answers ReadConfig.
func ReadConfigSpace(space []byte, offset uint64, data []byte) {
	for i := range data {
		o := offset + uint64(i)
		if o >= offset && o < uint64(len(space)) {
			data[i] = space[o]
		} else {
			data[i] = 0
		}
	}
}
