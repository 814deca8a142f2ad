// SPDX-License-Identifier: GPL-2.0
/*
 * moex sysfs: /sys/class/moex/moexN/{abi_version,engine} and the stats/
 * group, one value per file (Documentation/ABI/testing/sysfs-class-moex).
 */
#include <linux/device.h>
#include <linux/sysfs.h>

#include "moex.h"

static struct moex_dev *to_moex_dev(struct device *dev)
{
	return container_of(dev, struct moex_dev, dev);
}

static ssize_t abi_version_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", MOEX_ABI_VERSION);
}
static DEVICE_ATTR_RO(abi_version);

static ssize_t engine_show(struct device *dev, struct device_attribute *attr,
			   char *buf)
{
	struct moex_dev *mdev = to_moex_dev(dev);
	ssize_t len;

	down_read(&mdev->engine_lock);
	len = sysfs_emit(buf, "%s\n",
			 mdev->engine ? mdev->engine->name : "none");
	up_read(&mdev->engine_lock);
	return len;
}
static DEVICE_ATTR_RO(engine);

static struct attribute *moex_dev_attrs[] = {
	&dev_attr_abi_version.attr,
	&dev_attr_engine.attr,
	NULL,
};

static const struct attribute_group moex_dev_group = {
	.attrs = moex_dev_attrs,
};

/**
 * struct moex_stat_attr - a stats/ file.
 * @attr: the sysfs attribute.
 * @offset: offset of its atomic64_t counter in struct moex_stats.
 */
struct moex_stat_attr {
	struct device_attribute attr;
	size_t offset;
};

static ssize_t moex_stat_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	struct moex_stat_attr *sa = container_of(attr, struct moex_stat_attr,
						 attr);
	atomic64_t *v = (void *)&to_moex_dev(dev)->stats + sa->offset;

	return sysfs_emit(buf, "%lld\n", atomic64_read(v));
}

#define MOEX_STAT(_field) {						\
	.attr = {							\
		.attr = { .name = #_field, .mode = 0444 },		\
		.show = moex_stat_show,					\
	},								\
	.offset = offsetof(struct moex_stats, _field),			\
}

static struct moex_stat_attr moex_stat_attrs[] = {
	MOEX_STAT(pinned_bytes),
	MOEX_STAT(pinned_regions),
	MOEX_STAT(pin_calls),
	MOEX_STAT(pin_failures),
	MOEX_STAT(unpin_calls),
	MOEX_STAT(copy_calls),
	MOEX_STAT(copy_bytes),
	MOEX_STAT(copy_failures),
	MOEX_STAT(dmabuf_exports),
	MOEX_STAT(open_files),
};

static struct attribute *moex_stats_attrs[] = {
	&moex_stat_attrs[0].attr.attr,
	&moex_stat_attrs[1].attr.attr,
	&moex_stat_attrs[2].attr.attr,
	&moex_stat_attrs[3].attr.attr,
	&moex_stat_attrs[4].attr.attr,
	&moex_stat_attrs[5].attr.attr,
	&moex_stat_attrs[6].attr.attr,
	&moex_stat_attrs[7].attr.attr,
	&moex_stat_attrs[8].attr.attr,
	&moex_stat_attrs[9].attr.attr,
	NULL,
};

static const struct attribute_group moex_stats_group = {
	.name = "stats",
	.attrs = moex_stats_attrs,
};

const struct attribute_group *moex_dev_groups[] = {
	&moex_dev_group,
	&moex_stats_group,
	NULL,
};
