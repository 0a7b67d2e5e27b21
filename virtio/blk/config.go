package blk

import (
	"encoding/binary"

	"github.com/hlsvmm/hlsvmm/virtio"
)

// virtio-blk feature bits (virtio 1.2 §5.2.3), as bit numbers.
const (
	FeatureSizeMax  = 1  // VIRTIO_BLK_F_SIZE_MAX
	FeatureSegMax   = 2  // VIRTIO_BLK_F_SEG_MAX
	FeatureGeometry = 4  // VIRTIO_BLK_F_GEOMETRY
	FeatureRO       = 5  // VIRTIO_BLK_F_RO
	FeatureBlkSize  = 6  // VIRTIO_BLK_F_BLK_SIZE
	FeatureFlush    = 9  // VIRTIO_BLK_F_FLUSH
	FeatureTopology = 10 // VIRTIO_BLK_F_TOPOLOGY
	FeatureMQ       = 12 // VIRTIO_BLK_F_MQ
)

// RingFeatures are the transport/ring features the worker serves through
// virtio/queue. VERSION_1 is mandatory.
const RingFeatures uint64 = 1<<virtio.FeatureVersion1 | 1<<virtio.FeatureEventIdx | 1<<virtio.FeatureIndirectDesc

// Layout of struct virtio_blk_config (virtio 1.2 §5.2.4). Fields of
// features not offered (geometry, topology, writeback, discard, write
// zeroes) read as zero.
const (
	configCapacity  = 0  // le64 capacity, in 512-byte sectors
	configSizeMax   = 8  // le32 size_max
	configSegMax    = 12 // le32 seg_max
	configGeometry  = 16 // le16 cylinders, u8 heads, u8 sectors
	configBlkSize   = 20 // le32 blk_size
	configTopology  = 24 // physical_block_exp, alignment_offset, le16 min_io_size, le32 opt_io_size
	configWriteback = 32 // u8 writeback, u8 unused0
	configNumQueues = 34 // le16 num_queues
	configDiscard   = 36 // discard and write-zeroes limits up to 60
	configSpaceSize = 60
)

// configSpace builds the read-only configuration space.
func configSpace(sectors uint64, segMax uint32, queues uint16) [configSpaceSize]byte {
	var s [configSpaceSize]byte
	binary.LittleEndian.PutUint64(s[configCapacity:], sectors)
	binary.LittleEndian.PutUint32(s[configSegMax:], segMax)
	binary.LittleEndian.PutUint32(s[configBlkSize:], SectorSize)
	binary.LittleEndian.PutUint16(s[configNumQueues:], queues)
	return s
}
