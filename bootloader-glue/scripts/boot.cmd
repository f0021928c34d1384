# Updraft A/B boot script for U-Boot, with Mender's variable names, so the
# Updraft agent and the Mender client can drive the same env.
#
# Build boot.scr from it with (Debian: u-boot-tools):
#
#   mkimage -A arm -T script -C none -n "Updraft boot" -d boot.cmd boot.scr
#
# Variables (env, as meta-mender's env_mender.h defines them):
#   mender_boot_part      partition number (decimal) of the slot to boot
#   mender_boot_part_hex  the same in hex, for "<if> <dev>:<part>"
#   upgrade_available     1 while a trial boot is armed or running
#   bootcount             boots since arming (decimal)
#   bootlimit             trial boots allowed before falling back (default 1)
#   mender_saveenv_canary set to 1 and saved here on the first boot; the
#                         agent refuses to touch an env U-Boot never saved
#                         when mender_check_saveenv_canary=1
# Board settings (set them in the default env; the defaults below fit a
# 32-bit board booting a zImage from mmc 0, partitions 2 and 3):
#   mender_rootfsa_part, mender_rootfsb_part (and their _hex forms),
#   mender_uboot_if, mender_uboot_dev, mender_kernel_root_base,
#   mender_kernel_name, mender_dtb_name, mender_boot_kernel_type,
#   updraft_bootargs (extra kernel arguments)
#
# Trial boots: the agent arms an update with one saved write of
# mender_boot_part=<new> mender_boot_part_hex=<new> upgrade_available=1
# bootcount=0. Each boot with upgrade_available=1 adds 1 to bootcount and
# saves; once bootcount > bootlimit the trial failed: go back to the other
# slot with upgrade_available=0 (bootcount is kept as a record). The agent
# confirms with upgrade_available=0 bootcount=0.
#
# With a U-Boot built with CONFIG_BOOTCOUNT_LIMIT and CONFIG_BOOTCOUNT_ENV
# (Mender's requirement), U-Boot already counts before running bootcmd and
# runs altbootcmd past the limit: set updraft_uboot_counts=1 so that this
# script does not count a second time. The fallback check below then only
# fires if altbootcmd is not set up.
#
# setexpr works in hex: bootcount stays decimal only up to 9, so keep
# bootlimit below 9.

# Board defaults, used only when the env does not set them.
if test -z "${mender_rootfsa_part}"; then setenv mender_rootfsa_part 2; fi
if test -z "${mender_rootfsb_part}"; then setenv mender_rootfsb_part 3; fi
if test -z "${mender_rootfsa_part_hex}"; then setenv mender_rootfsa_part_hex ${mender_rootfsa_part}; fi
if test -z "${mender_rootfsb_part_hex}"; then setenv mender_rootfsb_part_hex ${mender_rootfsb_part}; fi
if test -z "${mender_uboot_if}"; then setenv mender_uboot_if mmc; fi
if test -z "${mender_uboot_dev}"; then setenv mender_uboot_dev 0; fi
if test -z "${mender_kernel_root_base}"; then setenv mender_kernel_root_base /dev/mmcblk0p; fi
if test -z "${mender_kernel_name}"; then setenv mender_kernel_name zImage; fi
if test -z "${mender_boot_kernel_type}"; then setenv mender_boot_kernel_type bootz; fi
if test -z "${bootlimit}"; then setenv bootlimit 1; fi

# A missing or foreign partition number boots slot A rather than nothing.
if test "${mender_boot_part}" != "${mender_rootfsa_part}" && test "${mender_boot_part}" != "${mender_rootfsb_part}"; then
    echo "Updraft: mender_boot_part='${mender_boot_part}' is not a slot, using slot A"
    setenv mender_boot_part ${mender_rootfsa_part}
    setenv mender_boot_part_hex ${mender_rootfsa_part_hex}
    setenv upgrade_available 0
    saveenv
fi

# Prove to user space that this is the env U-Boot reads and writes.
if test "${mender_saveenv_canary}" != "1"; then
    setenv mender_saveenv_canary 1
    saveenv
fi

if test "${upgrade_available}" = "1"; then
    if test "${updraft_uboot_counts}" != "1"; then
        if test -z "${bootcount}"; then setenv bootcount 0; fi
        setexpr bootcount ${bootcount} + 1
        saveenv
    fi
    if test ${bootlimit} -ne 0 && test ${bootcount} -gt ${bootlimit}; then
        echo "Updraft: trial boot of partition ${mender_boot_part} failed ${bootcount} times, falling back"
        if test "${mender_boot_part}" = "${mender_rootfsa_part}"; then
            setenv mender_boot_part ${mender_rootfsb_part}
            setenv mender_boot_part_hex ${mender_rootfsb_part_hex}
        else
            setenv mender_boot_part ${mender_rootfsa_part}
            setenv mender_boot_part_hex ${mender_rootfsa_part_hex}
        fi
        setenv upgrade_available 0
        saveenv
    else
        echo "Updraft: trial boot ${bootcount} of ${bootlimit}, partition ${mender_boot_part}"
    fi
fi

# Boot the selected slot.
setenv mender_kernel_root ${mender_kernel_root_base}${mender_boot_part}
setenv mender_uboot_root "${mender_uboot_if} ${mender_uboot_dev}:${mender_boot_part_hex}"
setenv bootargs "root=${mender_kernel_root} rootwait ${updraft_bootargs}"
if test -n "${mender_dtb_name}"; then
    load ${mender_uboot_root} ${fdt_addr_r} /boot/${mender_dtb_name}
fi
load ${mender_uboot_root} ${kernel_addr_r} /boot/${mender_kernel_name}
${mender_boot_kernel_type} ${kernel_addr_r} - ${fdt_addr_r}

# Only reached when loading or booting failed. During a trial, reset: the
# next boot counts this failure and eventually falls back. Otherwise there
# is nothing better to boot.
echo "Updraft: booting partition ${mender_boot_part} failed"
if test "${upgrade_available}" = "1"; then
    reset
fi
